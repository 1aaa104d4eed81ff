"""`stride`: the command line for people (athletes, activities, imports, analytics, jobs).

A client only: it talks to a Stride server through the generated `stride.v1` stubs and
never imports the server's own packages."""
