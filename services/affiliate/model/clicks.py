"""Which clicks count: the GIVT filter and the hourly de-duplication.

GIVT (general invalid traffic, the MRC/IAB level that lists and rules can catch, as opposed to
sophisticated invalid traffic) is filtered in this order, the first rule that matches giving
the reason: a prefetch or preview request; a known bot or crawler user agent; a non-browser
agent (none, or not a browser's); an address in a configured data-centre range. Then the
business rules: the programme must be active, the link's creator's own clicks never count,
the visitor must have consented to affiliate tracking, and the same visitor counts once per
link per hour (the visitor is any of: the keyed pseudonym of the address, the visitor id on
the device, the signed-in user).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Substrings of user agents that announce a bot, a crawler or a link-preview fetcher (matched
# case-insensitively). The IAB/ABC International Spiders & Bots List is licensed; this is the
# public core of it, and `AffiliateConfig.extra_bot_patterns` extends it.
KNOWN_BOT_PATTERNS: tuple[str, ...] = (
    "bot", "crawl", "spider", "slurp", "scrape", "archiver", "facebookexternalhit", "facebookcatalog",
    "meta-externalagent", "embedly", "quora link preview", "skypeuripreview", "outbrain", "pinterest",
    "vkshare", "w3c_validator", "whatsapp", "headlesschrome", "phantomjs", "lighthouse", "pingdom",
    "uptime", "monitor", "ahrefs", "semrush", "mj12", "dotbot", "petalbot", "yandex", "baiduspider",
    "bytespider", "gptbot", "ccbot", "chatgpt-user", "claudebot", "perplexity", "google-inspectiontool",
    "adsbot", "mediapartners", "feedfetcher", "preview",
)
# Agents of HTTP libraries and tools: not a person in a browser.
NON_BROWSER_PATTERNS: tuple[str, ...] = (
    "curl/", "wget/", "python-requests", "python-urllib", "python-httpx", "aiohttp", "go-http-client",
    "java/", "okhttp", "apache-httpclient", "libwww-perl", "httpie", "axios/", "node-fetch", "undici",
    "postmanruntime", "insomnia", "powershell", "ruby", "php/", "scrapy", "http_request",
)
BROWSER_PREFIXES: tuple[str, ...] = ("mozilla/", "opera/")
PREFETCH_WORDS: tuple[str, ...] = ("prefetch", "preview", "prerender")


class FilterReason(enum.StrEnum):
    BOT = "BOT"
    DUPLICATE_WITHIN_HOUR = "DUPLICATE_WITHIN_HOUR"
    SELF_CLICK = "SELF_CLICK"
    PROGRAM_INACTIVE = "PROGRAM_INACTIVE"
    NON_BROWSER_AGENT = "NON_BROWSER_AGENT"
    PREFETCH = "PREFETCH"
    DATA_CENTRE_ADDRESS = "DATA_CENTRE_ADDRESS"
    NO_TRACKING_CONSENT = "NO_TRACKING_CONSENT"


class GivtFilter:
    """The list-based part of click filtering; pure and fast (one regular expression per list)."""

    def __init__(self, *, data_centre_ranges: Sequence[str] = (), extra_bot_patterns: Sequence[str] = (),
                 agents_remembered: int = 10_000) -> None:
        self._bots = tuple(pattern.lower() for pattern in (*KNOWN_BOT_PATTERNS, *extra_bot_patterns))
        self._networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in data_centre_ranges)
        # Real traffic repeats a few thousand user agents: each is judged once.
        self._agents: OrderedDict[str, FilterReason | None] = OrderedDict()
        self._agents_remembered = agents_remembered

    def reason(self, *, user_agent: str, purpose_header: str, client_ip: str) -> FilterReason | None:
        purpose = purpose_header.lower()
        if any(word in purpose for word in PREFETCH_WORDS):
            return FilterReason.PREFETCH
        if user_agent in self._agents:
            by_agent = self._agents[user_agent]
        else:
            by_agent = self._agents[user_agent] = self._agent_reason(user_agent)
            if len(self._agents) > self._agents_remembered:
                self._agents.popitem(last=False)
        if by_agent is not None:
            return by_agent
        if client_ip and self._in_data_centre(client_ip):
            return FilterReason.DATA_CENTRE_ADDRESS
        return None

    def _agent_reason(self, user_agent: str) -> FilterReason | None:
        agent = user_agent.lower()  # substring tests in C: cheaper than one alternation regex
        if any(pattern in agent for pattern in self._bots):
            return FilterReason.BOT
        if not agent.startswith(BROWSER_PREFIXES) or any(pattern in agent for pattern in NON_BROWSER_PATTERNS):
            return FilterReason.NON_BROWSER_AGENT
        return None

    def _in_data_centre(self, client_ip: str) -> bool:
        if not self._networks:
            return False  # parsing an address is the costly part: skip it when no range is configured
        address = ipaddress.ip_address(client_ip)
        return any(address.version == network.version and address in network for network in self._networks)


# A visitor counted on a link is not counted there again within this long (either way in time).
DUPLICATE_WINDOW = dt.timedelta(hours=1)


class RecentVisitors:
    """Who this process counted on which link in the last hour: in memory, in front of the durable
    click log, so a repeat is filtered without a read. It knows this replica's clicks only: the
    store checks every counted click again against all of them (`_store_click`).

    Rebuilt from the log's last hour at start (`remember`), so a restart forgets nobody. Bounded:
    the oldest entries go first, and an entry older than the window is as good as gone anyway.
    """

    def __init__(self, window: dt.timedelta = DUPLICATE_WINDOW, *, capacity: int = 1_000_000) -> None:
        self._window = window
        self._capacity = capacity
        self._last: OrderedDict[tuple[str, str], dt.datetime] = OrderedDict()

    def seen_within_window(self, link: str, visitor_keys: Iterable[str], at: dt.datetime) -> bool:
        for key in visitor_keys:
            last = self._last.get((link, key))
            if last is not None and abs(at - last) < self._window:
                return True
        return False

    def remember(self, link: str, visitor_keys: Iterable[str], at: dt.datetime) -> None:
        for key in visitor_keys:
            self._last[(link, key)] = at
            self._last.move_to_end((link, key))
        while len(self._last) > self._capacity:
            self._last.popitem(last=False)


@dataclass(frozen=True)
class Click:
    """A recorded click. No address, no user agent: the pseudonym and (sealed) country only."""

    link: str  # creators/{creator}/trackingLinks/{link}
    click_id: str
    counted: bool
    filter_reason: FilterReason | None
    visitor_id: str
    user: str  # users/{user} or ''
    visitor_pseudonym: str
    burst: bool
    cpc_earned_minor: int
    click_time: dt.datetime

    @property
    def name(self) -> str:
        return f"{self.link}/clicks/{self.click_id}"
