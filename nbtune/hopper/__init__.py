"""Model hopper parallelism (`%%tune --hopper --data X,Y`): Keras models hop over worker-resident partitions.

Light on purpose: a worker imports `nbtune.hopper._runner` (and so this package) to train its hops.
"""
