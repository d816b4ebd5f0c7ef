"""Spark executors: the warm worker pool and hyperopt's SparkTrials."""
