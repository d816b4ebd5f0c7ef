"""What runs inside one trial; it stays light (standard library and cloudpickle) because Spark workers import it."""
