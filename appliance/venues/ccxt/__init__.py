"""Live venues through ccxt: :class:`CcxtVenue` and its parts.

* :mod:`.venue` -- the adapter (Venue protocol, idempotent submission, polling/streams, reconciliation);
* :mod:`.client_ids` -- Lyra's client order id on each exchange (table :data:`CLIENT_ID_SPECS`);
* :mod:`.budget` -- the per-venue request budget (table :data:`BUDGETS`);
* :mod:`.errors` -- ccxt exceptions -> actions; secret redaction;
* :mod:`.convert` -- ccxt markets/trades/balances -> Lyra's model;
* :mod:`.health` -- CONNECTED / DEGRADED / DOWN tracking.
"""

from appliance.venues.ccxt.budget import BUDGETS, BucketSpec, BudgetSpec, Priority, RequestBudget, budget_spec_for
from appliance.venues.ccxt.client_ids import CLIENT_ID_SPECS, ClientIdSpec, Dedup, LookupMethod, client_id_spec, venue_client_id
from appliance.venues.ccxt.venue import CcxtVenue, CcxtVenueOptions

__all__ = [
    "BUDGETS", "BucketSpec", "BudgetSpec", "CLIENT_ID_SPECS", "CcxtVenue", "CcxtVenueOptions", "ClientIdSpec", "Dedup",
    "LookupMethod", "Priority", "RequestBudget", "budget_spec_for", "client_id_spec", "venue_client_id",
]
