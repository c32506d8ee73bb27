"""An auditor client's token: what `credgate audit verify|search|trace --url` do first."""

from __future__ import annotations

import aiohttp

from credcore.errors import ConfigError


async def auditor_headers(session: aiohttp.ClientSession, base: str, client_id: str,
                          client_secret: str) -> dict[str, str]:
    """The Authorization header of an `audit:read` token from the gateway at `base`
    (client_credentials, client_secret_basic); ConfigError if the gateway refuses the client."""
    basic = aiohttp.encode_basic_auth(client_id, client_secret)
    async with session.post(f"{base}/oauth/token", data={"grant_type": "client_credentials", "scope": "audit:read"},
                            headers={"Authorization": basic}) as resp:
        if resp.status != 200:
            raise ConfigError(f"the gateway refused the auditor credentials ({resp.status}).")
        return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
