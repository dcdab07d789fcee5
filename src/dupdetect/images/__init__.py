"""Images: the routes, the body parser, the image service and the rules that decide what is a
duplicate."""
