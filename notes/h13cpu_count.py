"""Files, lines and cross-file imports of private names in kernels/cpu/ (h13cpu).
A private name: a leading underscore, imported from another module of the package
(``from dropkit.kernels.cpu._x import _name``); private *modules* of the package imported by
name (``from dropkit.kernels.cpu import _x``) are counted apart, and attribute reads of private
names of another module (``module._name``, ``obj._attr`` of another file's class) too."""
import ast
import pathlib
import sys

root = pathlib.Path(sys.argv[1])
files = sorted(root.glob("*.py"))
lines = sum(len(f.read_text().splitlines()) for f in files)
names = modules = 0
mods = {f.stem for f in files}
attr = 0
for f in files:
    tree = ast.parse(f.read_text())
    imported_modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dropkit.kernels.cpu"):
            for alias in node.names:
                if node.module == "dropkit.kernels.cpu" and alias.name in mods:
                    if alias.name.startswith("_"):
                        modules += 1
                    imported_modules.add(alias.asname or alias.name)
                elif alias.name.startswith("_"):
                    names += 1
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported_modules and node.attr.startswith("_") and not node.attr.startswith("__"):
            attr += 1
print(f"{len(files)} files, {lines} lines; private names imported across files: {names}; "
      f"private-name attribute reads of imported package modules: {attr}; "
      f"imports of the package's private modules: {modules}")
