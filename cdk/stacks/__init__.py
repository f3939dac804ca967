"""DiscScope stacks: storage, inference, workflow, api_web, mlops (see cdk/app.py for the wiring)."""
