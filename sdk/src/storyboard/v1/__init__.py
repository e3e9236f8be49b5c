"""Generated gRPC stubs of the public storyboard.v1 contract. Do not edit: run `make protos`."""
