"""``python -m onnx2tflite_direct``: the command line (``cli.main``).

Why the import is guarded: importing the command line loads numpy, onnx and the whole
pipeline (a second or two), before ``cli.main`` installs its own Ctrl-C handling; a Ctrl-C
then is the same one line and exit code 130 as later (nothing has been written yet). The
package's ``__init__`` imports nothing heavy, so this guard is the first code that runs.
"""

import sys

try:
    from .cli import main
except KeyboardInterrupt:
    sys.stderr.write("error: interrupted before converting: nothing was written\n")
    raise SystemExit(130) from None  # cli.EXIT_INTERRUPTED (not importable yet)

if __name__ == "__main__":
    raise SystemExit(main())
