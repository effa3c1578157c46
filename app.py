"""Entry point of the web app (also the Hugging Face Spaces app_file)."""

import sys

from qwen3arena.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
