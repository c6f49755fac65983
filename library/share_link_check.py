#!/usr/bin/python
"""Documentation of the share_link_check action (plugins/action/share_link_check.py).

The action runs entirely on the controller, in the task's own process, and never runs this
file: like ansible.builtin.debug's module file, it holds the documentation only.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: share_link_check
short_description: Ask gradio share links from the controller whether they still answer
description:
  - Asks each link in O(links) C(GET /) and C(GET /config), all links at once (one thread
    each), from the controller, where a student reaches them from.
  - A link C(answers) when C(/) answers 200 with an HTML page and C(/config) 401 (behind a
    login; 200 without one), as gradio 4 does. Any other answer makes it C(dead) (the share
    server's own error page for a tunnel it no longer has, a TLS error). When nothing answers
    at all (the name does not resolve, the connection is refused or times out), the link is
    C(unreachable) - the controller cannot tell - and a caller should not act on it.
  - Read-only; behaves the same in check mode. Runs on the controller, with no connection to
    the host; use it once per play (C(run_once)) for the whole class.
options:
  links:
    description:
      - "C({host: {url: <link>, auth: <bool>}}): the links to ask; a host whose C(url) is
        empty or null is left out. C(auth): Forge runs behind a login (default true)."
    type: dict
    required: true
  via:
    description:
      - Send the requests to this C(http://host:port) instead of each link's own address,
        with the link's host name as the C(Host) header (how a share server routes them),
        a share server of your own on a private network, or the lab's. Empty sends them to
        each link itself, over HTTPS with its certificate checked.
    type: str
    default: ""
  timeout:
    description: Seconds each request may take.
    type: float
    default: 5.0
  retry_for:
    description: Seconds to keep asking a link that does not answer yet (a link printed a
      moment ago); 0 asks once.
    type: float
    default: 0.0
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Ask every host's share link whether it answers
  share_link_check:
    links:
      vm-01: {url: "{{ hostvars['vm-01'].share_url }}", auth: true}
      vm-02: {url: "{{ hostvars['vm-02'].share_url }}", auth: true}
  run_once: true
  register: checked
"""

RETURN = r"""
links:
  description: Per host asked, what its link answered.
  type: dict
  returned: always
  sample:
    vm-01: {url: "https://0123456789abcdef01.gradio.live", state: answers,
            detail: "the app page, and /config 401", seconds: 0.41}
    vm-02: {url: "https://fedcba987654321001.gradio.live", state: dead,
            detail: "GET / answered 404 (gradio answers 200)", seconds: 0.38}
"""
