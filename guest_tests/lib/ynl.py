"""The kernel's own YNL netlink library (tools/net/ynl/pyynl) with the specs of
Documentation/netlink/specs, from the kernel under test's source (the host copies them
into the results directory). A request's outcome is (errno, extack message)."""

import ast
import contextlib
import io
import os
import sys


class Ynl:
    """The netdev, ethtool and rt-link families of the kernel's YNL under `root`."""

    def __init__(self, root):
        tools = os.path.join(root, "tools")
        if tools not in sys.path:
            sys.path.append(tools)
        from net.ynl.pyynl.lib import Netlink, NlError, YnlFamily

        specs = os.path.join(root, "Documentation/netlink/specs")
        self.specs, self.family_cls = specs, YnlFamily
        self.NlError = NlError
        self.create = [Netlink.NLM_F_CREATE, Netlink.NLM_F_EXCL]  # RTM_NEWLINK's flags
        # schema="": no jsonschema validation (slow, and not in the image)
        self.netdev = YnlFamily(f"{specs}/netdev.yaml", schema="")
        self.ethtool = YnlFamily(f"{specs}/ethtool.yaml", schema="")
        self.rtnl = YnlFamily(f"{specs}/rt-link.yaml", schema="")

    def socket(self, family: str):
        """A netlink socket of its own for `family` (e.g. "netdev"): state the kernel ties
        to the socket (a devmem binding) lives until its close()."""
        return self.family_cls(f"{self.specs}/{family}.yaml", schema="")

    def outcome(self, fn, *args, **kwargs):
        """(errno, the extack message) of one request; 0 and a message is a warning on
        success, which YNL prints instead of returning, so it is read from that print."""
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                fn(*args, **kwargs)
        except self.NlError as e:
            return e.error, (e.nl_msg.extack or {}).get("msg", "")
        return 0, success_warning(printed.getvalue())


def success_warning(printed: str) -> str:
    """The extack message in YNL's "Netlink warning:" print of an ACK ('... extack: {...}')."""
    if "Netlink warning:" not in printed:
        return ""
    extack = printed.partition("extack: ")[2].strip()
    try:
        return str(ast.literal_eval(extack.splitlines()[0]).get("msg", extack))
    except (ValueError, SyntaxError, IndexError, AttributeError):
        return extack or printed.strip()


_YNL: dict = {}


def load_ynl(root) -> Ynl:
    if root not in _YNL:
        _YNL[root] = Ynl(root)
    return _YNL[root]
