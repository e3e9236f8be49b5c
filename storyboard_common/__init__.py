"""What every Storyboard service shares: settings, logging, errors, request validation, images and the gRPC server
and channel factories. Nothing here knows about a particular service."""
