"""Examples of dbos_async (a package, so ``examples.shop`` imports from the repository root)."""
