"""Getting a machine ready to keep its last words, and proving it.

* :mod:`~memconsole.setup.kernel`: pure readers of bzImage headers, kernel
  configurations and module ``.modinfo`` sections;
* :mod:`~memconsole.setup.facts`: what a machine (or a root directory) says:
  installed kernels, ramoops build, firmware, command line, GRUB words;
* :mod:`~memconsole.setup.planner`: the pure planner (rules R1..R15,
  docs/setup.md);
* :mod:`~memconsole.setup.kconfig`: the kernel-configuration check;
* :mod:`~memconsole.setup.files`: the files a plan becomes, GRUB escaping
  and its checks;
* :mod:`~memconsole.setup.install`: the transaction that installs them,
  the manifest and ``--undo``;
* :mod:`~memconsole.setup.doctor`: the live checks (``memconsole doctor``);
* :mod:`~memconsole.setup.canary`: the survival canary (``memconsole canary``).

The package imports nothing at start-up; import the module you need.
"""
