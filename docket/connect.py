"""Connecting to Temporal: every client gets the pydantic data converter."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from docket.settings import Settings


async def temporal_client(settings: Settings, lazy: bool = False) -> Client:
    tls: TLSConfig | bool = settings.temporal_tls or bool(settings.temporal_api_key)
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=tls,
        api_key=settings.temporal_api_key,
        data_converter=pydantic_data_converter,
        lazy=lazy,  # connects on its first call: reading the store needs no Temporal
    )
