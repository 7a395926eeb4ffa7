"""Pure computation engines: arrays and parameters in, values out. No Django here."""
