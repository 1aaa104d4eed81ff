"""`make bench`: every benchmark, each against its baseline in the same run."""

from bench import interceptors, reads

reads.run()
print()
interceptors.run()
