"""The DiscScope CDK app (`cdk/app.py`) and its stacks."""
