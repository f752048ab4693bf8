"""Privacy: the data keys of crypto-shredding, data-subject requests (GDPR Art. 12, 15, 17, 20, 22)
and records of processing (Art. 30).

`PersonalDataKeyService` hands each subject's data key to services for `libs.privacy` (wrapped at
rest by the key-encryption key, destroyed on erasure). `DataSubjectService` takes requests,
tracks their deadlines, gathers every service's export (the `SubjectDataService` contract,
`sources.py`) and runs every service's erasure step before shredding the key. Its database:
`compliance/privacy.db`; its key-encryption key: `keys/privacy-kek.secret` (mode 0600).
docs/privacy.md has the whole picture.
"""
