"""The currencies an order may be placed in: ISO 4217 codes of money in circulation, and how many
decimal places each one's amounts have (its minor unit).

docket keeps money to two decimal places, so a currency whose minor unit is three places (the
Bahraini dinar, say) is refused rather than rounded. Funds, precious metals and testing codes
(XAU, XDR, XTS ...) are not money an order is paid in."""

from __future__ import annotations

from decimal import Decimal

ISO_4217 = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
    GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
    MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
    SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)
NO_DECIMALS = frozenset("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMALS = frozenset("BHD IQD JOD KWD LYD OMR TND".split())


def decimal_places(code: str) -> int:
    """How many decimal places an amount in this currency has (0, 2 or 3)."""
    if code in NO_DECIMALS:
        return 0
    return 3 if code in THREE_DECIMALS else 2


def amount_text(amount: Decimal, currency: str, *, grouped: bool = False) -> str:
    """An amount written as its currency is: 19.90 EUR, but 3980 JPY (the store keeps 3980.00);
    `grouped` puts in thousands separators (1,234.50), as a mail does."""
    return f"{amount:{',' if grouped else ''}.{decimal_places(currency)}f}"


def check_currency(code: str) -> str:
    """The code itself, or a ValueError saying what is wrong and what is allowed."""
    if code not in ISO_4217:
        hint = f" (write it in capitals: {code.upper()})" if code.upper() in ISO_4217 else ""
        raise ValueError(f"{code!r} is not an ISO 4217 currency code, such as EUR, USD or GBP{hint}")
    if code in THREE_DECIMALS:
        raise ValueError(f"{code} amounts have three decimal places; docket keeps money to two")
    return code
