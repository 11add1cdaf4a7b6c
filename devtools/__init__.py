"""Run the back office on a developer's machine: virtualenv, embedded servers, supervisor.

``make run`` and ``make test`` call into this package. It is development tooling, not part of
the deployed application; ``devtools.virtualenv`` runs before the virtualenv exists, so this
package must import nothing outside the standard library at import time.
"""
