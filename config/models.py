"""Moved: each kind to config/kinds/<kind>.py, the root to config/probe_config.py.

A temporary re-export while importers move to the new homes; new code imports from
there.
"""

from __future__ import annotations

from config.checks import AddressNode as AddressNode
from config.checks import CheckBase as CheckBase
from config.checks import Node as Node
from config.checks import Retries as Retries
from config.checks import TlsOptions as TlsOptions
from config.defaults import Defaults as Defaults
from config.fields import AbsolutePath as AbsolutePath
from config.fields import BytesPattern as BytesPattern
from config.fields import HeaderName as HeaderName
from config.fields import Headers as Headers
from config.fields import HeaderValue as HeaderValue
from config.fields import HttpUrl as HttpUrl
from config.fields import JsonScalar as JsonScalar
from config.fields import MiB as MiB
from config.fields import PositiveDuration as PositiveDuration
from config.fields import RunCount as RunCount
from config.fields import TextPattern as TextPattern
from config.fields import WithReferences as WithReferences
from config.kinds.dns import DNS_PORT as DNS_PORT
from config.kinds.dns import SYSTEM_RESOLVER as SYSTEM_RESOLVER
from config.kinds.dns import DnsCheck as DnsCheck
from config.kinds.dns import DnsExpect as DnsExpect
from config.kinds.dns import DnsNode as DnsNode
from config.kinds.dns import DnsQuery as DnsQuery
from config.kinds.dns import Rcode as Rcode
from config.kinds.dns import split_server as split_server
from config.kinds.freshness import DEFAULT_LINE_PATTERN as DEFAULT_LINE_PATTERN
from config.kinds.freshness import FileSource as FileSource
from config.kinds.freshness import FreshnessCheck as FreshnessCheck
from config.kinds.freshness import FreshnessSource as FreshnessSource
from config.kinds.freshness import HttpSource as HttpSource
from config.kinds.freshness import PushSource as PushSource
from config.kinds.freshness import SourceNode as SourceNode
from config.kinds.freshness import SqlSource as SqlSource
from config.kinds.freshness import TimeZoneName as TimeZoneName
from config.kinds.http import HttpCheck as HttpCheck
from config.kinds.http import HttpCheckBase as HttpCheckBase
from config.kinds.http import HttpExpect as HttpExpect
from config.kinds.http import HttpNode as HttpNode
from config.kinds.http import Method as Method
from config.kinds.http import ProxyOptions as ProxyOptions
from config.kinds.http import ProxyUrl as ProxyUrl
from config.kinds.icmp import IcmpCheck as IcmpCheck
from config.kinds.icmp import IcmpExpect as IcmpExpect
from config.kinds.icmp import IcmpNode as IcmpNode
from config.kinds.icmp import LossRate as LossRate
from config.kinds.icmp import parse_loss as parse_loss
from config.kinds.proxy import ProxyCheck as ProxyCheck
from config.kinds.tcp import Payload as Payload
from config.kinds.tcp import TcpCheck as TcpCheck
from config.kinds.tcp import TcpExpect as TcpExpect
from config.kinds.tcp import TcpProtocol as TcpProtocol
from config.kinds.tls import TlsCheck as TlsCheck
from config.probe_config import Check as Check
from config.probe_config import ProbeConfig as ProbeConfig
from config.signing import SIGN_FIELDS as SIGN_FIELDS
from config.signing import TEMPLATE_FIELD as TEMPLATE_FIELD
from config.signing import SignHeaders as SignHeaders
from config.signing import SignOptions as SignOptions
