"""Family of audio tagging models, built by name through `registry`."""

import importlib

# Family modules, each registering its builders on import. A new family is one module here.
FAMILY_MODULES = ("lean.models.lean", "lean.models.resnet", "lean.models.cab_cnn",
                  "lean.models.att_crnn", "lean.models.scene_cnn")

for _module in FAMILY_MODULES:
    importlib.import_module(_module)
