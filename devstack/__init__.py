"""The embedded AWS stand-in: moto server, in-process Lambdas, local endpoint, event dispatch."""
