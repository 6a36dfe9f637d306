"""The Flow Service API: a client, response models, and turning dataset-export flows into exports."""

from __future__ import annotations

DATA_LAKE_SOURCE_SPEC = "23598e46-f560-407b-88d5-ea6207e49db0"
# destination connection spec id -> (name, dataset-export flow spec id, URL scheme)
DESTINATIONS = {
    "4fce964d-3f37-408f-9778-e597338a21ee": ("Amazon S3", "269ba276-16fc-47db-92b0-c1049a3c131f", "s3"),
    "6d6b59bf-fb58-4107-9064-4d246c0e5bb2": ("Azure Blob Storage", "95bd8965-fc8a-4119-b9c3-944c2c2df6d2", "az"),
    "be2c3209-53bc-47e7-ab25-145db8b873e1": ("Azure Data Lake Gen2", "17be2013-2549-41ce-96e7-a70363bec293", "abfs"),
    "10440537-2a7b-4583-ac39-ed38d4b848e8": ("Data Landing Zone", "cd2fc47e-e838-4f38-a581-8fff2f99b63a", "az"),
    "c5d93acb-ea8b-4b14-8f53-02138444ae99": ("Google Cloud Storage", "585c15c4-6cbf-4126-8f87-e26bff78b657", "gs"),
    "36965a81-b1c6-401b-99f8-22508f1e6a26": ("SFTP", "354d6aad-4754-46e4-a576-1b384561c440", "sftp"),
}
DATASET_FLOW_SPECS = {flow_spec: conn_spec for conn_spec, (_, flow_spec, _) in DESTINATIONS.items()}
