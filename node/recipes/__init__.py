"""Builtin recipes (docs/recipes.md): ``digits`` (the MLP every demo ran before recipes) and ``digits_cnn``.

Each is one module file, so its hash (``ledger.recipe.recipe_cid``) covers exactly that file.
"""
