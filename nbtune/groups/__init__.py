"""One model per group (`%%tune --by KEY --data DF`): a search per group of a DataFrame, in Spark tasks."""
