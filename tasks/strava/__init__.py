"""The Strava integration: API client, shared rate-limit budget, circuit breaker, token
encryption (one module per concept)."""

from tasks.strava.budget import Budget, BudgetSnapshot
from tasks.strava.circuit import CircuitBreaker, CircuitSnapshot
from tasks.strava.client import Activity, Athlete, StravaClient, Streams, Tokens
from tasks.strava.crypto import TokenCipher, TokenDecryptionError
from tasks.strava.errors import (
    BudgetExhausted,
    CircuitOpen,
    NotFound,
    RateLimited,
    StravaError,
    TokenExpired,
    Unauthorized,
    WaitUntil,
)

__all__ = [
    "Activity",
    "Athlete",
    "Budget",
    "BudgetExhausted",
    "BudgetSnapshot",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitSnapshot",
    "NotFound",
    "RateLimited",
    "StravaClient",
    "StravaError",
    "Streams",
    "TokenCipher",
    "TokenDecryptionError",
    "TokenExpired",
    "Tokens",
    "Unauthorized",
    "WaitUntil",
]
