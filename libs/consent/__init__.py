"""The consent cache every caller of CheckConsent uses (ranking, ads, affiliate clicks)."""
