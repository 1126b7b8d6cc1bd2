"""crm_service: after-sales and the contact centre — cases, SLAs, complaints, surveys, FAQ."""
