"""The AWS CDK app: a bus stack and one stack per service, built from the service manifests."""
