"""The one pinned LiteRT schema revision the project is generated from.

Shared by ``tools/fetch_schema.py`` (download/verify) and the generator (stamp/check), so a
schema bump is a one-place change followed by regeneration.
"""

PINNED_REPO = "google-ai-edge/LiteRT"
PINNED_PATH = "tflite/converter/schema/schema.fbs"
PINNED_COMMIT = "3647910a70fe34d0ee0cb96e2e00a421d77bf553"
PINNED_SHA256 = "8b9b424c923124df1e722d3d0f52fa273989207053875d07a9d582d51a7e0fa7"
PINNED_URL = f"https://raw.githubusercontent.com/{PINNED_REPO}/{PINNED_COMMIT}/{PINNED_PATH}"
