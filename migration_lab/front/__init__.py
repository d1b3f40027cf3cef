"""Front ends, thin layers over the kit: the notebook API (`ml.chapter`), the widgets, the command line."""
