# The Parquet archive, catalogued for Athena and Spark on EMR. Layout (written
# by the compactor): data/archive/topic=<t>/partition=<p>/<file>.parquet with
# columns offset, timestamp, key, value, headers. Partition projection lets
# Athena find new topics and partitions without a crawler; Spark on EMR
# reads the same table (run MSCK REPAIR TABLE after new topics appear).

resource "aws_glue_catalog_database" "archive" {
  name        = replace("silt_${var.name}", "-", "_")
  description = "Silt ${var.name}: archived topics (Parquet)"
}

resource "aws_glue_catalog_table" "records" {
  name          = "records"
  database_name = aws_glue_catalog_database.archive.name
  description   = "Every archived record of every topic"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    EXTERNAL                    = "TRUE"
    classification              = "parquet"
    "projection.enabled"        = "true"
    "projection.topic.type"     = "injected"
    "projection.partition.type" = "integer"
    "projection.partition.range" = "0,4095"
    "storage.location.template" = "s3://${aws_s3_bucket.data.bucket}/${local.data_prefix}/archive/topic=$${topic}/partition=$${partition}/"
  }
  partition_keys {
    name = "topic"
    type = "string"
  }
  partition_keys {
    name = "partition"
    type = "int"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.data.bucket}/${local.data_prefix}/archive/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "offset"
      type = "bigint"
    }
    columns {
      name    = "timestamp"
      type    = "timestamp"
      comment = "Record timestamp (UTC; Parquet TIMESTAMP(MICROS, adjusted to UTC))"
    }
    columns {
      name = "key"
      type = "binary"
    }
    columns {
      name = "value"
      type = "binary"
    }
    columns {
      name = "headers"
      type = "array<struct<key:string,value:binary>>"
    }
  }
}
