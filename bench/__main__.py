"""`make bench`: every benchmark, each against its baseline in the same run."""

from bench import reads

reads.run()
