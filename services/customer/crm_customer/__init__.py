"""crm_customer: customer master data — profile, contacts, consent, credit rating, grading."""
