"""Telling others about builds: :mod:`.notifier` sends what :mod:`.deliveries` records, commit
statuses (:mod:`.statuses`) and redeploy hooks (:mod:`.redeploy`), as :mod:`.outbound` requests.
"""
