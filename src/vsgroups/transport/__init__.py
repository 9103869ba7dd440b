"""Transports: the authenticated framing codec and the asyncio TCP mesh that carry protocol frames."""
