"""Personal data by crypto-shredding: per-subject data keys, sealed fields, erasure by key destruction."""
