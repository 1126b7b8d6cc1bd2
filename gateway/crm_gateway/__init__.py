"""crm_gateway: the CRM platform's HTTP API for front-end teams and external systems."""
