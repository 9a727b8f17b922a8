"""The paper venue: a simulated exchange matched against candles (see venue.py and fill_model.py)."""

from appliance.venues.paper.fill_model import CandleFillModel, FillDecision
from appliance.venues.paper.venue import PaperOrder, PaperVenue, instruments_from_dataset

__all__ = ["CandleFillModel", "FillDecision", "PaperOrder", "PaperVenue", "instruments_from_dataset"]
