"""Building one image: :mod:`.pipeline` runs a build end to end over :mod:`.mirror` (git),
:mod:`.context` (the tar stream), :mod:`.engine` and :mod:`.backends` (the Docker engine) and
:mod:`.buildlog`; :mod:`.housekeeping` keeps the engine's disk bounded.
"""
