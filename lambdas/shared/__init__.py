"""Code every Lambda shares: settings, S3 keys, the DynamoDB study store, YOLO feedback text.

Only the standard library, boto3 and aws-lambda-powertools may be imported here (no numpy/torch).
"""
