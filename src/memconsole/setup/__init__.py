"""Getting a machine ready to keep its last words, and proving it: the
reservation plan and boot configuration (``memconsole setup``), the live
checks (:mod:`memconsole.setup.doctor`) and the survival canary
(:mod:`memconsole.setup.canary`).  Import the module you need; this package
imports nothing."""
