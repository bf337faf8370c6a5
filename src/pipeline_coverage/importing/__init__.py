"""Getting data in: the import format's tables and their checks and upsert, with two
fronts over them — ``load`` (a folder of CSV files in the contract's own shape) and
``import`` (a CRM's own export, read through a preset or a mapping file)."""
