"""The DSA ad repository (Art. 26, 39) and the ad-targeting rules (Art. 26(3), 28)."""
