"""The shop example: a FastAPI service whose checkouts are durable workflows
(``examples/shop/README.md``)."""
