"""Generated gRPC stubs of the services' internal contracts. Do not edit: run `make protos`."""
