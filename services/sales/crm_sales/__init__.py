"""The sales bounded context: opportunities, quotes, pipeline and forecast."""
