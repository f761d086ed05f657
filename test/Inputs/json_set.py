#!/usr/bin/env python3
"""Sets (or deletes) one key of a JSON file in place, for error tests.

    json_set.py FILE KEY[/KEY...] VALUE     VALUE is JSON ("\"x\"", "1", "null")
    json_set.py FILE KEY[/KEY...] --delete

Standard library only. Keys are separated by '/' (tensor names hold dots).
The file is rewritten as transformers writes it (indent 2, sorted keys).
"""
import json
import sys


def main():
    path, keys, value = sys.argv[1], sys.argv[2].split("/"), sys.argv[3]
    with open(path) as f:
        root = json.load(f)
    node = root
    for key in keys[:-1]:
        node = node[key]
    if value == "--delete":
        del node[keys[-1]]
    else:
        node[keys[-1]] = json.loads(value)
    with open(path, "w") as f:
        f.write(json.dumps(root, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
