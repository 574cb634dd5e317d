import sys
from pathlib import Path

# Make the toy flow of _toy.py importable as a plain module (it is also run as a script).
sys.path.insert(0, str(Path(__file__).parent))
