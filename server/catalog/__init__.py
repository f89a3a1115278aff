"""What has been submitted (files in server/catalog/): campaigns, records, bulk submission, record
inputs.
"""
