"""Privacy: the data keys of crypto-shredding, data-subject requests (GDPR Art. 12, 15, 17, 20, 22)
and records of processing (Art. 30).

Built: `PersonalDataKeyService` (each subject's data key, wrapped by the key-encryption key,
handed to services for `libs.privacy`; destroyed on erasure). Its database:
`compliance/privacy.db`; its key-encryption key: `keys/privacy-kek.secret` (mode 0600).
"""
